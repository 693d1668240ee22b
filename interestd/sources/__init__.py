"""Where raw mail comes from: files (.eml, mbox, Maildir) and IMAP mailboxes."""
