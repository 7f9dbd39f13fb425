"""The four stages, each one function the numbered scripts call (show, build_map, convert and reverse,
verify), the bundled examples' inputs (demo), and what every script shares (cli: arguments, one-line errors).

The top layer: it may import everything below it; nothing in the package imports it but pt2ms.__main__.
"""
