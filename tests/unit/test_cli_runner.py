"""cli/runner.py: `train --resume` without a checkpoint in the work dir starts afresh and says where it looked."""
from mmengine.config import Config

from convnext_dense.cli.runner import nothing_to_resume


def config_in(tmp_path, work_dir, **settings):
    path = tmp_path / 'cascade_t.py'
    path.write_text('resume = True\n')
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(settings)
    return cfg


def test_no_checkpoint_turns_resume_off_and_names_the_folder(tmp_path):
    cfg = config_in(tmp_path, tmp_path / 'work_dirs' / 'cascade_t')
    assert nothing_to_resume(cfg) == (f'--resume: no checkpoint in {tmp_path}/work_dirs/cascade_t (no '
                                      f'last_checkpoint file there); training starts from scratch')
    assert cfg.resume is False


def test_a_sibling_run_of_the_same_config_is_named(tmp_path):
    earlier = tmp_path / 'work_dirs' / 'my_run'
    earlier.mkdir(parents=True)
    (earlier / 'last_checkpoint').write_text(str(earlier / 'epoch_1.pth'))
    (earlier / 'cascade_t.py').write_text('')  # the dumped config of that run
    message = nothing_to_resume(config_in(tmp_path, tmp_path / 'work_dirs' / 'cascade_t'))
    assert message.endswith(f'. Checkpoints of cascade_t.py are in {earlier}: pass --work-dir to continue that run')


def test_nothing_to_say_when_there_is_a_checkpoint_or_a_path(tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text('x')
    assert nothing_to_resume(config_in(tmp_path, work_dir)) is None
    cfg = config_in(tmp_path, tmp_path / 'empty', load_from='epoch_3.pth')
    assert nothing_to_resume(cfg) is None and cfg.resume is True
