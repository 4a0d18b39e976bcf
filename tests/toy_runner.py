"""A tiny mmengine training loop for tests of checkpoints and hooks."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        outputs = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((outputs.squeeze(-1) - labels) ** 2).mean())
        return outputs


class ToyDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index), 1.0]), labels=torch.tensor(float(index) * 0.5))


def toy_runner(work_dir, max_iters, resume=False, load_from=None, model=None, custom_hooks=()):
    """A 2-parameter mmengine Runner that checkpoints every 2 iterations."""
    return Runner(
        model=model or ToyModel(), custom_hooks=list(custom_hooks), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, load_from=load_from, randomness=dict(seed=0), default_scope='mmengine')
