"""Which CPU kernels a model uses: decided once per machine by its instruction set, and switchable."""
import pytest
import torch

from convnext_dense.errors import ConfigError
from convnext_dense.models.convnext import Block, ConvNeXt
from convnext_dense.ops import (BY_CPU_CAPABILITY, ENV_VAR, KERNEL_NAMES, NO_KERNELS, CpuKernels, cpu_kernels_of,
                                machine_kernels, resolve_cpu_kernels, set_cpu_kernels)

SMALL = dict(depths=(1, 1, 2, 1), channels=(16, 32, 64, 128))
ALL_ON_AVX2 = ('dwconv_weight_grad', 'gelu', 'mlp_tiled', 'fold_layer_scale')


@pytest.fixture
def capability(monkeypatch):
    """Pretends the CPU has the instruction set given to the returned function (PyTorch's report)."""
    def pretend(name):
        monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: name)
        machine_kernels.cache_clear()
    monkeypatch.delenv(ENV_VAR, raising=False)
    yield pretend
    machine_kernels.cache_clear()


@pytest.mark.parametrize('isa, expected', [
    ('AVX2', ALL_ON_AVX2),
    ('AVX512', ('dwconv_weight_grad', 'mlp_onednn', 'fold_layer_scale')),
    ('DEFAULT', ()),
    ('SVE256', ()),
])
def test_the_machine_choice_follows_the_instruction_set(capability, isa, expected):
    capability(isa)
    assert machine_kernels().names == expected
    assert cpu_kernels_of(ConvNeXt(SMALL)) == expected
    assert cpu_kernels_of(ConvNeXt(SMALL)) == expected  # the same for every model: decided once


def test_decided_once_per_process(capability, monkeypatch):
    capability('AVX2')
    first = machine_kernels()
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: 'AVX512')
    assert machine_kernels() is first  # asked again, the process keeps its answer


def test_true_and_false_force_every_kernel_on_or_off(capability):
    capability('DEFAULT')
    assert cpu_kernels_of(ConvNeXt(SMALL, cpu_kernels=True)) == ALL_ON_AVX2  # the portable C++ tail
    capability('AVX512')
    assert resolve_cpu_kernels(True) == CpuKernels(True, True, 'onednn', True)
    assert cpu_kernels_of(ConvNeXt(SMALL, cpu_kernels=False)) == ()


@pytest.mark.parametrize('value, expected', [
    ('0', ()), ('off', ()), ('1', ALL_ON_AVX2), ('auto', ('dwconv_weight_grad', 'mlp_onednn', 'fold_layer_scale')),
    ('gelu, mlp_tiled', ('gelu', 'mlp_tiled')),
])
def test_the_environment_variable_forces_it_when_the_model_is_built(capability, monkeypatch, value, expected):
    capability('AVX512')
    monkeypatch.setenv(ENV_VAR, value)
    expected = expected if value != '1' else ('dwconv_weight_grad', 'gelu', 'mlp_onednn', 'fold_layer_scale')
    assert cpu_kernels_of(ConvNeXt(SMALL)) == expected
    assert cpu_kernels_of(ConvNeXt(SMALL, cpu_kernels=False)) == ()  # the argument wins


def test_unknown_names_are_refused_in_one_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"cpu_kernels=\('gelu', 'fast'\): unknown CPU kernel 'fast'; choose "
                                          r"from dwconv_weight_grad, gelu"):
        ConvNeXt(SMALL, cpu_kernels=('gelu', 'fast'))
    monkeypatch.setenv(ENV_VAR, 'mlp_onednn,mlp_tiled')
    with pytest.raises(ConfigError, match=f'{ENV_VAR}=mlp_onednn,mlp_tiled: .*two forms of one op'):
        ConvNeXt(SMALL)


def test_set_cpu_kernels_switches_a_built_model(capability):
    capability('AVX2')
    model = ConvNeXt(SMALL, cpu_kernels=False)
    assert cpu_kernels_of(set_cpu_kernels(model, None)) == ALL_ON_AVX2
    assert cpu_kernels_of(set_cpu_kernels(model, ('gelu',))) == ('gelu',)
    assert {block.act.kernel for stage in model.stages for block in stage} == {True}
    assert cpu_kernels_of(set_cpu_kernels(model, NO_KERNELS)) == ()


def test_grn_blocks_keep_their_modules_under_the_tiled_tail():
    assert Block(8, use_grn=True, cpu_kernels=CpuKernels(mlp='tiled')).mlp_kernel is None
    assert Block(8, use_grn=True, cpu_kernels=CpuKernels(mlp='onednn')).mlp_kernel == 'onednn'


def test_every_table_entry_names_known_kernels():
    assert set(BY_CPU_CAPABILITY) == {'AVX2', 'AVX512'}
    for kernels in BY_CPU_CAPABILITY.values():
        assert set(kernels.names) <= set(KERNEL_NAMES)
        assert resolve_cpu_kernels(kernels.names) == kernels
