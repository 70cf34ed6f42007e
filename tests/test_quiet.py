"""The misfiring "incorrect regex pattern" warning of transformers 4.57.3+ is dropped for non-Mistral folders only."""

import json
import logging

import pytest

from slimserve.quiet import TOKENIZER_LOGGER, drop_misfired_tokenizer_warning


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture()
def records():
    logger = logging.getLogger(TOKENIZER_LOGGER)
    handler, filters, level = _Records(), list(logger.filters), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # other tests may have turned transformers' verbosity down to errors
    yield handler.messages
    logger.removeHandler(handler)
    logger.filters[:] = filters
    logger.setLevel(level)


def _warn(folder):
    logging.getLogger(TOKENIZER_LOGGER).warning(
        f"The tokenizer you are loading from '{folder}' with an incorrect regex pattern: https://example. ..."
    )


def _big_vocab_folder(path, model_type: str):
    """A fast tokenizer over 100k words (transformers only checks vocabularies that large) with a config beside it,
    as this transformers saves them."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(100_002)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0").save_pretrained(path)
    cfg = {"model_type": model_type, "transformers_version": transformers.__version__}
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_a_real_load_of_a_gemma_folder_no_longer_warns_and_a_mistral_one_still_does(tmp_path, records):
    from transformers import AutoTokenizer

    gemma = _big_vocab_folder(tmp_path / "gemma", "gemma3_text")
    mistral = _big_vocab_folder(tmp_path / "mistral", "mistral")
    AutoTokenizer.from_pretrained(gemma)
    before = [m for m in records if "incorrect regex pattern" in m]
    drop_misfired_tokenizer_warning()
    drop_misfired_tokenizer_warning()  # idempotent
    AutoTokenizer.from_pretrained(gemma)
    assert [m for m in records if "incorrect regex pattern" in m] == before
    AutoTokenizer.from_pretrained(mistral)
    after = [m for m in records if "incorrect regex pattern" in m]
    if before:  # this transformers misfires: the Gemma warning is gone, the Mistral one kept
        assert len(before) == 1 and len(after) == 2 and str(mistral) in after[1]
    else:  # a fixed transformers: nothing to drop
        assert after == [] or str(mistral) in after[-1]


def test_a_mistral_folder_or_an_unreadable_one_keeps_the_warning(tmp_path, records):
    drop_misfired_tokenizer_warning()
    (tmp_path / "mistral").mkdir()
    (tmp_path / "mistral" / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    _warn(tmp_path / "mistral")
    _warn(tmp_path / "missing")
    logging.getLogger(TOKENIZER_LOGGER).warning("an unrelated warning")
    assert len(records) == 3
