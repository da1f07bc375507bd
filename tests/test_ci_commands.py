"""CI runs what a contributor is told to run: the commands of `.ci/run` are those of the README's
Contributing section, line for line, so the README's set-up gives CI's machine."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Contributing\n", 1)[1].split("\n## ", 1)[0]
    told = _commands(re.search(r"```bash\n(.*?)```", section, re.S).group(1))
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    run = _commands(script.split('cd "$(dirname "$0")/.."\n', 1)[1])
    assert run == told
    assert "python3 -m pip install -r requirements-test.txt" in run  # one install, torch pinned in the file
