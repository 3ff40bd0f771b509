"""Built-in transforms, one small module each, registered by name through entry points."""
