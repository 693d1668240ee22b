"""interestd: one shared mailbox of notification e-mails becomes a worked queue of interest cards."""

__version__ = "0.1.0"
