"""The benchmark corpus: text of Debian's dict-gcide and dict-foldoc packages.

``apt-get install dict-gcide dict-foldoc`` puts them under /usr/share/dictd as dictzip
(gzip-compatible) files. Each dictionary entry's paragraph becomes one line, with the
editors' source tags ("[1913 Webster]", "[WordNet 1.5]", "[PJC]") removed: they are
bookkeeping, not text, and would put "1913" and "webster" in every window.

    python benchmarks/dictd_corpus.py /tmp/dict.txt
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

DICT_FILES = ("/usr/share/dictd/gcide.dict.dz", "/usr/share/dictd/foldoc.dict.dz")
_SOURCE_TAGS = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet 1\.5|PJC)\]")
# GCIDE's syllabified headword (\Ag"i*tate\) right after the headword, and its accent codes
# ([`a], [^i], [=e]): split by the tokenizer they become fragments ("ag", "i", "tate")
_HEADWORD_FORMS = re.compile(r"\\[^\\\n]{1,80}\\|\[(?:[`^=.~'\"]?[a-z]{1,2}|[a-z]{1,2}[`^=.~'\"])\]")


def write_dictd_corpus(out: Path) -> Path:
    """Write one paragraph per line; returns ``out``. Raises SystemExit if the packages are missing."""
    missing = [f for f in DICT_FILES if not Path(f).exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install dict-gcide dict-foldoc")
    with open(out, "w", encoding="utf-8") as fh:
        for f in DICT_FILES:
            # a handful of stray cp1252 bytes in GCIDE: replace them rather than fail
            text = gzip.open(f).read().decode("utf-8", errors="replace")
            for para in re.split(r"\n\s*\n", text):
                para = " ".join(_HEADWORD_FORMS.sub(" ", _SOURCE_TAGS.sub(" ", para)).split())
                if para:
                    fh.write(para + "\n")
    return out


if __name__ == "__main__":
    print(write_dictd_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "dict.txt")))
