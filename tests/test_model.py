import torch

from aslhpc.training.model import LadNet, count_parameters


def test_parameter_count_matches_the_paper_architecture():
    assert count_parameters(LadNet(29)) == 544_713


def test_stage_shapes_follow_the_papers_arithmetic():
    # ((150 - 7) / 1) + 1 = 144 -> pool 72; 72 - 5 + 1 = 68 -> 34; 34 - 3 + 1 = 32 -> 16
    model = LadNet(29).eval()
    stages = model.features(torch.zeros(2, 3, 150, 150))
    assert [tuple(s.shape[1:]) for s in stages] == [
        (8, 144, 144), (8, 72, 72), (16, 68, 68), (16, 34, 34), (4, 32, 32), (4, 16, 16),
    ]
    assert model(torch.zeros(2, 3, 150, 150)).shape == (2, 29)


def test_class_count_sets_the_output_width():
    assert LadNet(5)(torch.zeros(1, 3, 150, 150)).shape == (1, 5)


def test_pool_before_relu_forward_is_identical_to_the_papers_order():
    torch.manual_seed(0)
    model = LadNet(29).eval()
    x = torch.randn(4, 3, 150, 150)
    stages = model.features(x)  # conv -> BN -> ReLU -> pool, as published
    paper = model.fc2(torch.relu(model.fc1(torch.flatten(stages[-1], 1))))
    assert torch.equal(model(x), paper)


def test_other_input_sizes_keep_the_layers_and_size_fc1_to_the_features():
    import pytest

    from aslhpc.errors import ConfigError
    from aslhpc.training.config import TrainConfig

    for size, side in ((30, 1), (64, 5), (151, 16), (224, 25)):
        model = LadNet(29, image_size=size)
        assert model.fc1.in_features == side * side * 4
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 29)
    with pytest.raises(ValueError, match="at least 30"):
        LadNet(29, image_size=29)
    with pytest.raises(ConfigError, match="image_size=8 .*at least 30"):
        TrainConfig(data="d", out="o", image_size=8)


def test_a_model_trained_at_another_size_loads_back_at_that_size(tmp_path):
    from aslhpc.training.modelio import load_model, save_model

    model = LadNet(29, image_size=64)
    save_model(tmp_path / "best_model.pt", model, tuple(f"c{i}" for i in range(29)), image_size=64,
               interpolation="bilinear", dropout=0.2)
    loaded = load_model(tmp_path / "best_model.pt")
    assert loaded.image_size == 64 and loaded.model.fc1.in_features == 5 * 5 * 4
    assert torch.equal(loaded.model.fc1.weight, model.fc1.weight)
