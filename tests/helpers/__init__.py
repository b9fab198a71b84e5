"""Code the tests share: the repository and its example images (fixtures are in conftest.py; the tests import
from here, never from conftest)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTENT = os.path.join(ROOT, "assets", "tubingen.jpg")
STYLE = os.path.join(ROOT, "assets", "starry_night.jpg")
STYLE2 = os.path.join(ROOT, "assets", "the_scream.jpg")
