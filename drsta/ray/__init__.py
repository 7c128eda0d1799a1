"""The library's Ray Data helpers: everything in drsta that imports Ray lives here."""
