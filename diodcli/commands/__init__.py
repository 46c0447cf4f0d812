"""One module per ``diod`` subcommand (see ``diodcli.lazy``)."""
