"""slimserve generate VARIANT PROMPT | slimserve chat VARIANT: text from a built variant, streamed to stdout."""

from __future__ import annotations

import argparse
import sys

from . import COMMANDS, catalog_arg, kwargs_of

SAMPLING = ("catalog", "max_new_tokens", "temperature", "top_p", "seed", "chat", "device", "verify")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    from ..generate import DEFAULT_MAX_NEW_TOKENS

    p.add_argument("variant", metavar="VARIANT", help="a variant name from `slimserve catalog list`")
    catalog_arg(p)
    p.add_argument(
        "--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help=f"default {DEFAULT_MAX_NEW_TOKENS}"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) decodes greedily; > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass when sampling (default 1.0)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument(
        "--no-chat", dest="chat", action="store_false", help="send the raw text, without the tokenizer's chat template"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    p.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip the sha256 check of the variant's files"
    )


@COMMANDS.register("generate")
def register(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="generate text from a variant (streamed to stdout)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  slimserve generate smollm2-int8 "What is the capital of France?"\n'
        '  slimserve generate smollm2-int4-g128 "Once upon a time" --no-chat --max-new-tokens 64\n'
        '  slimserve generate smollm2-int8 "Write a haiku" --temperature 0.7 --top-p 0.9 --seed 1',
    )
    _sampling_args(g)
    g.add_argument("prompt", metavar="PROMPT", help="the prompt; - reads it from stdin")
    g.set_defaults(func=generate_cmd)
    c = sub.add_parser(
        "chat",
        help="chat with a variant: one message per line on stdin, history kept",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Commands: /reset clears the history, /exit (or Ctrl-D) ends.\n\nexamples:\n"
        "  slimserve chat smollm2-int8\n  printf 'Hi!\\nWhat did I just say?\\n' | slimserve chat smollm2-int8",
    )
    _sampling_args(c)
    c.set_defaults(func=chat_cmd)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def generate_cmd(args: argparse.Namespace) -> int:
    from ..generate import generate

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    generate(args.variant, prompt, stream=_write, **kwargs_of(args, *SAMPLING))
    print()
    return 0


def chat_cmd(args: argparse.Namespace) -> int:
    from ..generate import chat

    chat(args.variant, **kwargs_of(args, *SAMPLING))
    return 0
