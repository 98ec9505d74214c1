import pytest
import torch

from model.network import DAIFNet, NetConfig


@pytest.mark.parametrize("s,h,w", [(2, 16, 16), (5, 37, 53), (7, 20, 64)])
def test_any_stack_and_image_size(s, h, w):
    net = DAIFNet(NetConfig(width=4, depth=3, near_m=0.5, far_m=12.0)).eval()
    x = torch.rand(2, s, 3, h, w)
    f = torch.linspace(1, 6, s).expand(2, s)
    out = net(x, f)
    assert out.aif.shape == (2, 3, h, w) and out.depth_m.shape == (2, 1, h, w)
    assert 0 <= out.aif.min() and out.aif.max() <= 1
    assert out.depth_m.min() >= 0.5 - 1e-5 and out.depth_m.max() <= 12.0 + 1e-4


def test_published_size_params():
    n = sum(p.numel() for p in DAIFNet(NetConfig(width=16, depth=4)).parameters())
    assert 1.5e6 < n < 3.0e6


def test_permutation_invariant_over_stack_order():
    net = DAIFNet(NetConfig(width=4, depth=2)).eval()
    x = torch.rand(1, 4, 3, 16, 16)
    f = torch.tensor([[1.0, 2.0, 3.0, 5.0]])
    p = torch.tensor([2, 0, 3, 1])
    a, b = net(x, f), net(x[:, p], f[:, p])
    torch.testing.assert_close(a.depth_m, b.depth_m)
    torch.testing.assert_close(a.aif, b.aif)


def test_input_errors():
    net = DAIFNet(NetConfig(width=4, depth=2))
    with pytest.raises(ValueError, match="at least 2"):
        net(torch.rand(1, 1, 3, 16, 16), torch.ones(1, 1))
    with pytest.raises(ValueError, match="focus_m"):
        net(torch.rand(1, 3, 3, 16, 16), torch.ones(1, 2))
    with pytest.raises(ValueError):
        NetConfig(near_m=5, far_m=1)


def test_gradients_flow():
    net = DAIFNet(NetConfig(width=4, depth=2))
    out = net(torch.rand(2, 3, 3, 16, 16), torch.tensor([[1.0, 2.0, 4.0]] * 2))
    (out.depth_m.mean() + out.aif.mean()).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_pad_to_multiple_rounds_up_to_the_next_multiple() -> None:
    from model.network import pad_to_multiple

    assert [pad_to_multiple(n, 16) for n in (240, 241, 1, 16, 255)] == [0, 15, 15, 0, 1]
    assert int(pad_to_multiple(torch.tensor(250), 8)) == 6  # traced sizes are tensors in an export
