"""The federation sender's log consumers, one module per producer."""
