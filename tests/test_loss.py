"""Style, content and TV loss terms against values computed by hand (the Gram itself: test_gram.py)."""

import torch

from nst.model.gram import gram
from nst.model.loss import content_term, gatys_style_loss, tv_loss


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The content term as a mean squared error per image: its scale is 1 / (elements of one image)."""
    return content_term(features, target, 1.0 / features[0].numel())


def test_style_loss_is_gatys_formula():
    torch.manual_seed(0)
    f, a = torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5)
    n, m = 4, 15
    G = f.reshape(4, 15) @ f.reshape(4, 15).T  # unnormalised Grams, as in the paper
    A = a.reshape(4, 15) @ a.reshape(4, 15).T
    paper = ((G - A) ** 2).sum() / (4 * n**2 * m**2)
    assert torch.allclose(gatys_style_loss(gram(f), gram(a), n), paper, rtol=1e-5)


def test_style_loss_is_zero_for_identical_images_and_positive_otherwise():
    f = torch.rand(1, 16, 8, 8)
    assert gatys_style_loss(gram(f), gram(f.clone()), 16).item() == 0.0
    assert gatys_style_loss(gram(f), gram(f * 1.1), 16).item() > 0.0


def test_content_loss_is_mean_squared_error():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = torch.zeros_like(x)
    assert content_loss(x, y).item() == (1 + 4 + 9 + 16) / 4


def test_tv_loss_zero_for_flat_image_and_counts_edges():
    assert tv_loss(torch.full((1, 3, 4, 4), 0.5)).item() == 0.0
    x = torch.zeros(1, 1, 2, 2)
    x[..., 1] = 1.0  # one vertical edge: every horizontal difference is 1, vertical ones 0
    assert tv_loss(x).item() == 1.0


def test_loss_gradients_keep_the_channels_last_layout():
    # The gradients of the content and style terms meet the deeper layers' gradient (channels_last) in one
    # add; a gradient in the other layout makes that add many times slower.
    f = torch.rand(1, 8, 6, 10).contiguous(memory_format=torch.channels_last).requires_grad_()
    target = torch.rand(1, 8, 6, 10).contiguous(memory_format=torch.channels_last)
    for loss in (content_loss(f, target), gatys_style_loss(gram(f), gram(target), 8)):
        (grad,) = torch.autograd.grad(loss, f)
        assert grad.is_contiguous(memory_format=torch.channels_last)
        assert not grad.is_contiguous()


def test_content_loss_gradient_is_the_mse_gradient():
    f = torch.randn(1, 4, 3, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    f.requires_grad_()
    target = torch.randn(1, 4, 3, 5, dtype=torch.float64)
    (grad,) = torch.autograd.grad(content_loss(f, target), f)
    assert torch.allclose(grad, 2 * (f.detach() - target) / f.numel())


def test_every_loss_is_per_image_in_a_batch():
    torch.manual_seed(1)
    f, t = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    for loss in (lambda x, y: content_loss(x, y), lambda x, y: gatys_style_loss(gram(x), gram(y), 4),
                 lambda x, y: tv_loss(x)):
        together = loss(f, t)
        assert together.shape == (3,)
        for b in range(3):
            assert torch.allclose(together[b], loss(f[b:b + 1], t[b:b + 1])[0], rtol=1e-6)


def test_the_fused_terms_equal_the_paper_formulas_with_their_weights():
    from nst.model.loss import style_term
    torch.manual_seed(2)
    f, a = torch.randn(2, 4, 6, 5, dtype=torch.float64), torch.randn(2, 4, 6, 5, dtype=torch.float64)
    weight, norm, m = 3.0, torch.tensor([0.5, 2.0], dtype=torch.float64), 30
    target = gram(a)  # the style's Gram, divided by its positions
    fused = style_term(f, target * m, weight / (4 * 4 ** 2 * m ** 2 * norm))
    assert torch.allclose(fused, weight * gatys_style_loss(gram(f), target, 4) / norm)
    fused = content_term(f, a, weight / (f[0].numel() * norm))
    assert torch.allclose(fused, weight * ((f - a) ** 2).mean((1, 2, 3)) / norm)
