"""The name registry: lazy backends are known before their module is imported; unknown names list them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mfrn.registry import Registry, UnknownNameError


def test_unknown_name_lists_the_known_ones_and_is_a_value_error():
    registry: Registry[int] = Registry("thing", lazy={"later": "json"})

    @registry.register("one")
    def one() -> int:
        return 1

    assert registry.names() == ["later", "one"]
    assert registry.build("one") == 1
    with pytest.raises(UnknownNameError) as caught:
        registry.get("onne")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert str(caught.value) == "unknown thing 'onne'; known: later, one"  # no KeyError quoting
    with pytest.raises(UnknownNameError, match="known: later, one"):
        registry.get("later")  # its module was imported but registers nothing under that name


def test_face_backends_are_listed_before_any_is_imported():
    """A fresh interpreter: a mistyped detector name lists every backend (it once said 'known: ')."""
    code = (
        "from mfrn.faces.base import build_detector, build_landmarker\n"
        "import sys\n"
        "for build, name in ((build_detector, 'dlibb'), (build_landmarker, 'dlib68')):\n"
        "    try:\n"
        "        build(name)\n"
        "    except ValueError as error:\n"
        "        print(error)\n"
        "print('mtcnn imported' if 'mfrn.faces.backends.mtcnn' in sys.modules else 'mtcnn not imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "unknown face detector 'dlibb'; known: dlib, mtcnn, retinaface",
        "unknown landmarker 'dlib68'; known: dlib, dlib81",
        "mtcnn not imported",
    ]
