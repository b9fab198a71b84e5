"""The Gram matrix against values computed by hand, and its gradient."""

import torch

from nst.model.gram import gram


def test_gram_matches_hand_computed_values():
    # One image, 2 channels, 1x2 positions: F = [[1, 2], [3, 4]].
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[1 * 1 + 2 * 2, 1 * 3 + 2 * 4], [3 * 1 + 4 * 2, 3 * 3 + 4 * 4]]) / 2  # / M
    assert torch.allclose(gram(f)[0], expected)


def test_gram_is_the_same_for_channels_last_features():
    f = torch.randn(1, 8, 5, 7)
    assert torch.allclose(gram(f), gram(f.contiguous(memory_format=torch.channels_last)), atol=1e-5)


def test_the_gram_gradient_is_its_symmetric_backward():
    f = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (f,))
