"""dicomvault: the command and the process that wires every layer together."""
