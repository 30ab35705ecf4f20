import subprocess
import sys

import saescope.steer as steer


def test_every_exported_name_resolves_to_what_it_names() -> None:
    for name in steer.__all__:
        value = getattr(steer, name)
        assert not isinstance(value, type(steer)), f"saescope.steer.{name} is a module"
    assert callable(steer.compare) and steer.compare.__name__ == "compare"


def test_reading_the_ops_does_not_import_transformers() -> None:
    code = "import sys, saescope.steer as s; s.OPS; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
