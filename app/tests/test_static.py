"""collectstatic with the deployed storage, and WhiteNoise serving its output."""
import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.test import Client, TestCase, override_settings


class StaticFiles(TestCase):
    def test_collectstatic_and_far_future_caching(self):
        with tempfile.TemporaryDirectory() as root, \
                override_settings(STATIC_ROOT=root, STORAGES=settings.PRODUCTION_STORAGES):
            call_command("collectstatic", interactive=False, verbosity=0)
            self.assertTrue((Path(root) / "staticfiles.json").is_file())
            self.assertTrue(list(Path(root).glob("core/site.*.css.gz")))

            client = Client()  # a new handler: WhiteNoise scans the new STATIC_ROOT
            page = client.get("/").content.decode()
            url = re.search(r'href="(/static/core/site\.[0-9a-f]{12}\.css)"', page).group(1)
            response = client.get(url)
            self.assertEqual(response.status_code, 200)
            self.assertIn("max-age=315360000", response["Cache-Control"])
            self.assertIn("immutable", response["Cache-Control"])
            self.assertIn(b"--accent", b"".join(response.streaming_content))
            gzipped = client.get(url, headers={"accept-encoding": "gzip"})
            self.assertEqual(gzipped["Content-Encoding"], "gzip")
