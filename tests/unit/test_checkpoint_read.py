"""Reading a checkpoint source (convnext_dense/checkpoint/read.py): one function for local files, URLs and
mmengine's schemes; the refusals name the path; a checked file is read once."""
import http.server
import threading

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from convnext_dense.checkpoint import keep_for_next_read, read_checkpoint, read_local_checkpoint
from convnext_dense.errors import CheckpointError, CheckpointFormatError, CheckpointNotFoundError


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.arange(3.0)}}, path)
    return path


def test_local_file_folder_and_missing_path(saved, tmp_path):
    assert torch.equal(read_checkpoint(str(saved))['state_dict']['w'], torch.arange(3.0))
    with pytest.raises(CheckpointNotFoundError) as error:
        read_checkpoint(str(tmp_path / 'nope.pth'), purpose='--resume')
    assert str(error.value) == f'checkpoint {tmp_path / "nope.pth"} (--resume) not found; pass an existing .pth ' \
                               f'file or URL'
    assert isinstance(error.value, FileNotFoundError)
    (tmp_path / 'last_checkpoint').write_text(str(saved))
    with pytest.raises(CheckpointError, match=f'checkpoint {tmp_path} is a folder; pass a .pth file in it, e.g. '
                                              f'{saved}'):
        read_checkpoint(str(tmp_path))


def test_an_object_that_is_no_state_dict_is_refused(tmp_path):
    path = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), path)
    with pytest.raises(CheckpointFormatError, match='holds a Tensor, not a state dict'):
        read_checkpoint(str(path))


def test_http_url_is_downloaded_once_into_the_weights_cache(saved, tmp_path, monkeypatch):
    """Through checkpoint.download: torch.hub's folder unless CONVNEXT_DENSE_WEIGHTS_DIR is set."""
    from convnext_dense.checkpoint import download
    served = []
    # urllib would send even 127.0.0.1 through a proxy set in the environment.
    for name in ('http_proxy', 'all_proxy', 'HTTP_PROXY', 'ALL_PROXY', download.CACHE_ENV, download.MIRROR_ENV):
        monkeypatch.delenv(name, raising=False)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(saved.parent), **kwargs)

        def log_message(self, *args):
            served.append(self.path)

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    url = f'http://127.0.0.1:{server.server_address[1]}/{saved.name}'
    try:
        for _ in range(2):
            assert torch.equal(read_checkpoint(url)['state_dict']['w'], torch.arange(3.0))
    finally:
        server.shutdown()
    assert served == [f'/{saved.name}'] and (tmp_path / 'hub' / 'checkpoints' / saved.name).is_file()


def test_other_schemes_go_to_mmengines_loaders(monkeypatch):
    def load_from_toy(filename, map_location):
        return {'from': filename}

    # mmengine tries its schemes in order, longest prefix first (the local one, '', last)
    monkeypatch.setattr(CheckpointLoader, '_schemes', {'toy://': load_from_toy, **CheckpointLoader._schemes})
    assert read_checkpoint('toy://bucket/model.pth') == {'from': 'toy://bucket/model.pth'}


def test_a_kept_checkpoint_is_handed_over_once_while_the_file_is_unchanged(saved, monkeypatch):
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    checked = read_checkpoint(str(saved))
    keep_for_next_read(str(saved), checked)
    assert read_local_checkpoint(str(saved)) is checked
    assert read_local_checkpoint(str(saved)) is not checked  # once
    keep_for_next_read(str(saved), checked)
    torch.save({'state_dict': {'w': torch.arange(4.0)}}, saved)  # the file changed meanwhile
    assert read_local_checkpoint(str(saved))['state_dict']['w'].shape == (4,)
    assert len(reads) == 3
