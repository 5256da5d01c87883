"""fsqtok.media.errors.check_readable: one stat call, the same one-line errors as before."""

from pathlib import Path

import pytest

from fsqtok.media import MediaError
from fsqtok.media.errors import check_readable


def test_a_readable_file_comes_back_as_a_path(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert check_readable(str(tmp_path / "a.png")) == tmp_path / "a.png"
    assert isinstance(check_readable(str(tmp_path / "a.png")), Path)


@pytest.mark.parametrize("where,message", [("missing.png", "no such file"), ("file.png/under.png", "no such file"),
                                           ("folder.png", "not a file"), ("empty.png", "empty file"),
                                           ("loop.png", "no such file")])
def test_each_unreadable_path_gets_its_one_line(tmp_path, where, message):
    (tmp_path / "file.png").write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    name = Path(where).name
    with pytest.raises(MediaError, match=f"^{name}: {message} \\({tmp_path / where}\\)$"):
        check_readable(tmp_path / where)
