"""The language server (`pushlang lsp`): .push files in an editor, checked by the compiler the CLI uses.

`workspace` keeps the files (open buffers over the disk, each text parsed once) and checks an open file
with what it imports; `locate`, `complete`, `hover` and `fixes` answer questions about a point of a file
in the language's own terms (1-based spans, columns in characters); `server` speaks the protocol (pygls,
lsprotocol) and converts positions. Everything but `server` imports no protocol library.
"""
