"""Token ids to streamed text with stop strings: never emits a stop string, nor half of one, nor half a character.

Decoding is incremental: each token decodes a short window (the tokens since the last emitted boundary, with the
ones before it as a prefix whose text is subtracted), so a token costs the same at position 10 and 1000, and
tokenizers that drop a word's leading space at the start of a decode still place it right.
"""

from __future__ import annotations


class StopText:
    """push(token) -> (new text, stopped). Holds back a tail that could still become a stop string."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""
        self.stopped = False
        self._prefix = 0  # ids[_prefix:_read] is the window whose text is already in self.text
        self._read = 0

    def push(self, token: int) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        self.ids.append(token)
        new = self._delta()
        if new is None:  # the bytes so far end mid-character; wait for the rest
            return "", False
        self.text = text = self.text + new
        cut = min((i for i in (text.find(s, max(0, self.sent - len(s))) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.text = text[:cut]
            return self._emit(cut), True
        return self._emit(len(text) - self._held(text)), False

    def _delta(self) -> str | None:
        dec = self.tokenizer.decode
        before = dec(self.ids[self._prefix : self._read], skip_special_tokens=True)
        after = dec(self.ids[self._prefix :], skip_special_tokens=True)
        if after.endswith("\ufffd"):
            return None
        self._prefix, self._read = self._read, len(self.ids)
        if after.startswith(before):
            return after[len(before) :]
        full = dec(self.ids, skip_special_tokens=True)  # the window's text did not extend its prefix: redo it whole
        return full[len(self.text) :]

    def flush(self) -> str:
        """The rest at the end of the sequence (a held tail that never became a stop string)."""
        return "" if self.stopped else self._emit(len(self.text))

    def _held(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _emit(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        piece = self.text[self.sent : upto]
        self.sent = upto
        return piece
