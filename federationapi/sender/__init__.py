"""The federation sender (outbound PDUs and EDUs).

- ``sender.py``: ``FederationSender`` (``build_sender``), the component's
  ``run()``: two consumer groups, one over ``roomserver.output``
  (``consumers/roomserver.py``), one over the EDU topics
  (``consumers/clientapi.py``);
- ``queues.py``: ``DestinationQueues``, one worker per destination sending
  its durable queue as transactions, with backoff;
- ``storage.py``: ``SenderDatabase``, the facade over the sender's tables.
"""
