"""The one atomic writer (atomic_output / atomic_write) and the clean-up of what a killed write leaves.

The safe checkpoint reader of the same module is tested in test_runtime.py (training checkpoints)
and test_security.py (crafted files).
"""
import os
import stat

import pytest

from convnext_dense.io import atomic_output, atomic_write, remove_stale_temporaries


def test_atomic_output_renames_into_place_when_the_block_succeeds(tmp_path):
    target = tmp_path / 'new' / 'folder' / 'results.pkl'
    with atomic_output(target, suffix='.tmp.pkl') as tmp:
        assert os.path.dirname(tmp) == str(target.parent) and tmp.endswith('.tmp.pkl')
        assert os.path.basename(tmp).startswith('.results.pkl.')
        with open(tmp, 'wb') as handle:
            handle.write(b'complete')
        assert not target.exists()  # nothing under the real name until the block ends
    assert target.read_bytes() == b'complete'
    assert [p.name for p in target.parent.iterdir()] == ['results.pkl']
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # an ordinary file, not mkstemp's private one


@pytest.mark.parametrize('fsync', [True, False])
def test_a_failing_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path, fsync):
    target = tmp_path / 'summary.json'
    atomic_write('{"old": 1}', target, fsync=fsync)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target, fsync=fsync) as tmp:
            with open(tmp, 'w') as handle:
                handle.write('{"half')
            raise KeyboardInterrupt  # stands in for an error or an interrupt half-way through
    assert target.read_text() == '{"old": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ['summary.json']


def test_atomic_write_takes_text_and_bytes(tmp_path):
    atomic_write('ünïcode', tmp_path / 'a.txt')
    atomic_write(b'\x00\x01', tmp_path / 'b.bin', fsync=False)
    assert (tmp_path / 'a.txt').read_text(encoding='utf-8') == 'ünïcode'
    assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'


def test_stale_temporaries_of_one_suffix_are_removed(tmp_path):
    # What a kill between writing and renaming leaves: atomic_output's temporary name for the target.
    with atomic_output(tmp_path / 'iter_4.pth') as tmp:
        name = os.path.basename(tmp)
    assert name.startswith('.iter_4.pth.') and name.endswith('.tmp')
    (tmp_path / name).write_bytes(b'half a checkpoint')
    (tmp_path / '.scalars.json.a1b2c3d4.tmp').write_bytes(b'{}')  # another writer's: kept
    removed = remove_stale_temporaries(tmp_path, suffix='.pth')
    assert [p.name for p in removed] == [name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.scalars.json.a1b2c3d4.tmp', 'iter_4.pth']
