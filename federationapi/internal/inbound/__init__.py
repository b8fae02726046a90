"""Inbound federation: /send transactions, the checks on received PDUs,
gap filling, and fetching events from other servers."""
