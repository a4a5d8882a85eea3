"""What editors get from pushlang besides the language server: a TextMate grammar (`textmate`)."""
