"""UserError names a setting as its caller spells it: the API keyword from Python, the flag from the CLI."""

from slimserve.errors import UserError, UserErrors, flag


def test_option_renders_keyword_from_python_and_flag_from_cli():
    e = UserError("variant 'a' exists", field="variants[].name", hint=("Use ", flag("--force", "force=True"), " now"))
    assert str(e) == "variants[].name: variant 'a' exists. Use force=True now"
    assert e.render(cli=True) == "variants[].name: variant 'a' exists. Use --force now"
    assert e.hint == "Use force=True now" and e.message == "variant 'a' exists"


def test_flag_field_is_the_keyword_from_python():
    e = UserError("must be at least 1, got 0", field="--eval-text")
    assert str(e) == "eval_text: must be at least 1, got 0"
    assert e.render(cli=True) == "--eval-text: must be at least 1, got 0"
    e = UserError(("a longer ", flag("--eval-text"), " file"), field=flag("--compare", "run_a, run_b"))
    assert str(e) == "run_a, run_b: a longer eval_text file"
    assert e.render(cli=True) == "--compare: a longer --eval-text file"


def test_user_errors_one_per_line_each_with_file():
    errs = [UserError("bad", file="r.yaml", field="a", allowed=[1, 2]), UserError("worse", file="r.yaml", field="b")]
    text = str(UserErrors("invalid recipe", errs, file="r.yaml"))
    assert text.splitlines() == [
        "r.yaml: invalid recipe (2 errors):",
        "  r.yaml: a: bad (allowed: 1, 2)",
        "  r.yaml: b: worse",
    ]
    assert (
        str(UserErrors("invalid recipe", errs[:1], file="r.yaml")) == "r.yaml: invalid recipe: a: bad (allowed: 1, 2)"
    )
