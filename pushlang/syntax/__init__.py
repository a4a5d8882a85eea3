"""The syntax layer: grammar loading, parsing, the Lark tree → AST, formatting. The only part of pushlang
that imports Lark (:mod:`.parser`, :mod:`.postlex`, :mod:`.builder`); :mod:`.keywords` and
:mod:`.literals` are plain data for everything else."""
