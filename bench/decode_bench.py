"""Decoder time per MB on adversarial messages (SPEC §4: decoders are linear in their input).

Each case first teaches the decoder a table's layout with an ordinary message, then feeds
messages built to hurt a backtracking parser: very long quoted strings, runs of '' quotes,
values that look like `col[type]:` or JSON keys, megabyte values, and a long value next to
an unchanged-TOAST marker (the layout does not fit, so the fallback runs). Prints the time
per MB of input for each case and size; a linear decoder shows a flat column.

    .venv/bin/python bench/decode_bench.py                 # the decoders in the tree
    .venv/bin/python bench/decode_bench.py --module PATH   # another decode.py (e.g. an old one)
    .venv/bin/python bench/decode_bench.py --budget 2      # seconds per case before giving up
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import time
from collections.abc import Callable
from types import ModuleType

SIZES = (16, 22, 1_000, 100_000, 1_000_000)


def td(body: str) -> bytes:
    return f"table public.adv: UPDATE: id[integer]:1 {body}".encode()


def w2j(value: str) -> bytes:
    head = '{"action":"U","xid":7,"schema":"public","table":"adv","columns":['
    return (
        head + '{"name":"id","type":"integer","value":1},'
        '{"name":"note","type":"text","value":' + value + "}]}"
    ).encode()


def _json_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# name -> (plugin, message of n characters of adversarial value)
CASES: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "td long quoted value, then unchanged TOAST": (
        "test_decoding",
        lambda n: td(f"note[text]:'{'a' * n}' big[text]:unchanged-toast-datum"),
    ),
    "td runs of '' (escaped quotes)": (
        "test_decoding",
        lambda n: td(f"note[text]:'{chr(39) * 2 * (n // 2)}' big[text]:unchanged-toast-datum"),
    ),
    "td value that looks like col[type]:": (
        "test_decoding",
        lambda n: td(f"note[text]:'{'x[int]: ' * (n // 8)}' big[text]:unchanged-toast-datum"),
    ),
    "td unterminated quoted value": (
        "test_decoding",
        lambda n: td(f"note[text]:'{'a' * n} big[text]:'b'"),
    ),
    "w2j long string with escapes": (
        "wal2json",
        lambda n: w2j(_json_str('a"\\' * (n // 3))),
    ),
    "w2j value that looks like JSON keys": (
        "wal2json",
        lambda n: w2j(_json_str('{"name":"x","type":"t","value":' * (n // 30))),
    ),
}
LEARN = {
    "test_decoding": td("note[text]:'plain' big[text]:'plain'"),
    "wal2json": w2j('"plain"'),
}


def _load(path: str | None) -> ModuleType:
    if path is None:
        import pgferry.cdc.decode as module

        return module
    spec = importlib.util.spec_from_file_location("decode_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _time_one(path: str | None, case: str, size: int, out: multiprocessing.Queue) -> None:
    module = _load(path)
    plugin, make = CASES[case]
    decode = module.decode_wal2json if plugin == "wal2json" else module.decode_test_decoding
    decode(LEARN[plugin], 1)  # learn the layout
    message = make(size)
    started = time.perf_counter()
    runs = 0
    while True:
        try:
            decode(message, 2)
        except module.DecodeError:
            pass
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed > 0.05 or runs >= 1000:
            break
    out.put((elapsed / runs, len(message)))


def measure(path: str | None, case: str, size: int, budget: float) -> str:
    """Seconds per MB for one message, or '> budget' when it did not finish in time."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_time_one, args=(path, case, size, out))
    proc.start()
    proc.join(budget)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return f"> {budget:g} s/msg"
    seconds, length = out.get()
    return f"{seconds / length * 1_000_000:.3f} s/MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", help="path of a decode.py to measure instead of pgferry's")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args(argv)
    print(f"{'case':48} " + " ".join(f"{s:>16,}" for s in SIZES))
    for case in CASES:
        cells = [measure(args.module, case, size, args.budget) for size in SIZES]
        print(f"{case:48} " + " ".join(f"{c:>16}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
