"""The loyalty payment relay: the HTTP API KIOSKs and the wallet app use, in front of the contracts."""
