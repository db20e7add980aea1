"""`gateway dev` only: an in-process SMTP server that captures every mail, and the dev mailbox."""
