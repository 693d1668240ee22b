"""Built-in parser plugins (imported as `interestd_parsers`), one module per source, registered as entry points."""
