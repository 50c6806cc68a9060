"""The SSH path: central in the data path of SSH sessions to OpenSSH targets.

Central opens its own SSH connection to the target, as the resource's user, with the credential
only central holds (a private key or a password), and checks the target against the host key
pinned in the resource's configuration.
"""
