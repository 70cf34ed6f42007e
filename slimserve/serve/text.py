"""Token ids to streamed text with stop strings: never emits a stop string, nor half of one, nor half a character."""

from __future__ import annotations


class StopText:
    """push(token) -> (new text, stopped). Holds back a tail that could still become a stop string."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.text = ""
        self.stopped = False

    def push(self, token: int) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # the bytes so far end mid-character; wait for the rest
            return "", False
        self.text = text
        cut = min((i for i in (text.find(s, max(0, self.sent - len(s))) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.text = text[:cut]
            return self._emit(cut), True
        return self._emit(len(text) - self._held(text)), False

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
