"""The summary report: SQL aggregates (data), HTML and text (render), SMTP delivery (mailer)."""
