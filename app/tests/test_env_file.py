"""The env-file reader behind `djdemo-manage --env-file`."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase

from djdemo.env import load_env_file, parse_env_file

SRC = Path(__file__).resolve().parent.parent / "src"


class EnvFile(SimpleTestCase):
    def test_parse(self):
        text = "\n".join([
            "# a comment", "; another", "", "DJDEMO_A=plain value ", "  DJDEMO_B = spaced",
            "DJDEMO_C='single $quoted # not a comment'", 'DJDEMO_D="dou\\"ble\\\\"', "DJDEMO_E=", "DJDEMO_F=a=b",
        ])
        self.assertEqual(parse_env_file(text), {
            "DJDEMO_A": "plain value", "DJDEMO_B": "spaced", "DJDEMO_C": "single $quoted # not a comment",
            "DJDEMO_D": 'dou"ble\\', "DJDEMO_E": "", "DJDEMO_F": "a=b"})

    def test_malformed_line_is_an_error(self):
        with self.assertRaisesMessage(ValueError, "line 2"):
            parse_env_file("DJDEMO_A=1\nnot a setting\n")

    def test_the_environment_wins(self):
        with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as handle:
            handle.write("DJDEMO_X=from-file\nDJDEMO_Y=from-file\n")
        self.addCleanup(os.unlink, handle.name)
        environ = {"DJDEMO_X": "from-env"}
        load_env_file(handle.name, environ)
        self.assertEqual(environ, {"DJDEMO_X": "from-env", "DJDEMO_Y": "from-file"})

    def test_manage_reads_the_env_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as handle:
            handle.write("DJDEMO_SECRET_KEY='from-the-env-file-0123456789-0123456789-0123456789'\n"
                         "DJDEMO_RELEASE_ID=9.9.9-envfile\n")
        self.addCleanup(os.unlink, handle.name)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DJDEMO_", "DJANGO_"))}
        env["PYTHONPATH"] = str(SRC)
        code = "from django.conf import settings; print(settings.RELEASE_ID)"
        proc = subprocess.run([sys.executable, "-m", "djdemo.manage", "--env-file", handle.name, "shell", "-v", "0", "-c", code],
                              env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "9.9.9-envfile")
