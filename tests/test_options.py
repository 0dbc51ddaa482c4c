"""Options: release flag names and defaults, validation with one-line errors."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

from options import MODEL_NAMES, GasMonoOptions

RELEASE_FLAGS = (
    "data_path log_dir model_name split num_layers dataset png height width disparity_smoothness scales "
    "min_depth max_depth use_stereo frame_ids batch_size learning_rate num_epochs scheduler_step_size "
    "v1_multiscale avg_reprojection disable_automasking predictive_mask no_ssim weights_init pose_model_input "
    "pose_model_type no_cuda num_workers load_weights_folder models_to_load log_frequency save_frequency "
    "eval_stereo eval_mono disable_median_scaling pred_depth_scale_factor ext_disp_to_eval eval_split "
    "save_pred_disps no_eval eval_eigen_to_benchmark eval_out_dir post_process iiters selfpp wpp sscale "
    "use_posegt www"
).split()


# The release's options.py defaults (paths aside), flag -> (value, type).
RELEASE_DEFAULTS = {
    "height": (256, int), "width": (320, int), "disparity_smoothness": (1e-3, float), "scales": ([0, 1, 2, 3], list),
    "min_depth": (0.1, float), "max_depth": (10.0, float), "frame_ids": ([0, -1, 1], list),
    "batch_size": (12, int), "learning_rate": (1e-4, float), "num_epochs": (40, int),
    "scheduler_step_size": (20, int), "num_layers": (18, int), "weights_init": ("pretrained", str),
    "pose_model_input": ("pairs", str), "pose_model_type": ("separate_resnet", str), "num_workers": (4, int),
    "log_frequency": (250, int), "save_frequency": (1, int), "pred_depth_scale_factor": (1, float),
    "eval_split": ("nyu", str), "model_name": ("mdp", str), "split": ("nyu", str), "dataset": ("nyu", str),
    "iiters": (2, int), "wpp": (0.1, float), "sscale": (0, int), "www": (0.2, float),
}
RELEASE_SWITCHES = (
    "png use_stereo v1_multiscale avg_reprojection disable_automasking predictive_mask no_ssim no_cuda "
    "eval_stereo eval_mono disable_median_scaling save_pred_disps no_eval eval_eigen_to_benchmark post_process "
    "selfpp use_posegt"
).split()


@pytest.mark.parametrize("flag", sorted(RELEASE_DEFAULTS))
def test_release_flag_defaults(flag):
    value, kind = RELEASE_DEFAULTS[flag]
    parsed = getattr(GasMonoOptions().parse([]), flag)
    assert type(parsed) is kind and parsed == value, f"--{flag}: {parsed!r}, release {value!r}"


def test_release_switches_default_off_and_models_to_load_is_the_one_difference():
    options = GasMonoOptions().parse([])
    assert [flag for flag in RELEASE_SWITCHES if getattr(options, flag) is not False] == []
    assert options.models_to_load == list(MODEL_NAMES)


def test_help_shows_the_release_defaults():
    help_text = " ".join(GasMonoOptions().parser.format_help().split())
    for flag, default in (("iiters", "2"), ("wpp", "0.1"), ("scheduler_step_size", "20"), ("num_workers", "4"),
                          ("sscale", "0")):
        assert re.search(rf"--{flag} {flag.upper()} .*?\(default: {re.escape(default)}\)", help_text), flag


def test_every_release_flag_exists_with_recipe_defaults():
    options = GasMonoOptions().parse([])
    for flag in RELEASE_FLAGS:
        assert hasattr(options, flag), flag
    assert options.models_to_load == list(MODEL_NAMES)
    assert options.frame_ids == [0, -1, 1] and options.scales == [0, 1, 2, 3]
    assert options.decoder_learning_rate == 1e-4
    assert (options.min_depth, options.max_depth) == (0.1, 10.0)
    # training takes mpvit_small; evaluation reads the checkpoint's encoder
    assert options.depth_encoder is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--height", "250"], "multiples of 32"),
        (["--frame_ids", "-1", "0", "1"], "must start with 0"),
        (["--use_posegt", "--frame_ids", "0", "1"], "--use_posegt needs"),
        (["--min_depth", "10", "--max_depth", "1"], "min_depth"),
        (["--models_to_load", "encoder", "decoder"], "unknown model"),
        (["--predictive_mask"], "not supported"),
        (["--batch_size", "0"], "at least 1"),
        (["--eval_split", "scannet", "--eval_protocol", "p2net"], "nyu only"),
        (["--learning_rate", "0"], "--learning_rate must be a finite number > 0, got 0.0"),
        (["--learning_rate=-5e-5"], "--learning_rate must be a finite number > 0"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite number > 0, got inf"),
        (["--decoder_learning_rate", "nan"], "--decoder_learning_rate must be a finite number > 0, got nan"),
        (["--weight_decay=-0.01"], "--weight_decay must be a finite number >= 0"),
        (["--lr_gamma", "0"], "--lr_gamma must be a finite number in (0, 1]"),
        (["--lr_gamma", "1.1"], "--lr_gamma must be a finite number in (0, 1]"),
        (["--disparity_smoothness=-1e-4"], "--disparity_smoothness must be a finite number >= 0"),
        (["--www", "nan"], "--www must be a finite number >= 0"),
        (["--wpp=-0.2"], "--wpp must be a finite number >= 0"),
        (["--wpp_ramp_epochs=-1"], "--wpp_ramp_epochs must be a finite number >= 0"),
        (["--pred_depth_scale_factor", "0"], "--pred_depth_scale_factor must be a finite number > 0"),
        (["--max_depth", "inf"], "--max_depth (finite)"),
        (["--depth_encoder", "resnet34"], "argument --depth_encoder: invalid choice: 'resnet34'"),
        (["--depth_encoder", "resnet18", "--mpvit_pretrained", "m.pth"],
         "--mpvit_pretrained initialises --depth_encoder mpvit_small, not resnet18; use --depth_encoder_pretrained"),
        (["--depth_encoder_pretrained", "r.pth"], "--depth_encoder_pretrained initialises a ResNet --depth_encoder"),
        (["--depth_encoder", "mpvit_small", "--depth_encoder_pretrained", "r.pth"], "for mpvit_small use"),
        (["--dataset", "scannet"], "argument --dataset: invalid choice: 'scannet'"),
        (["--dataset", "scannet"], "'nyu', 'folder', 'kitti', 'kitti_odom'"),
        (["--use_stereo"], "--use_stereo needs a data set with stereo pairs (kitti, kitti_odom), not --dataset nyu"),
        (["--dataset", "folder", "--split", "mine", "--use_stereo"], "not --dataset folder"),
        (["--dataset", "kitti"], "--split nyu lists NYUv2 scenes; with --dataset kitti give its split"),
        (["--frame_ids", "0"], "--frame_ids 0 alone leaves no source frame to warp"),
        (["--dataset", "kitti", "--split", "eigen_zhou", "--use_stereo", "--frame_ids", "0", "--use_posegt"],
         "--use_posegt needs --frame_ids 0 -1 1"),
    ],
)
def test_invalid_options_give_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        GasMonoOptions().parse(argv)
    assert exit_info.value.code == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and message in error_lines[0]


def test_extreme_but_possible_values_are_accepted():
    options = GasMonoOptions().parse(["--learning_rate", "1e10", "--lr_gamma", "1", "--weight_decay", "0",
                                      "--wpp", "0", "--overwrite"])
    assert options.learning_rate == 1e10 and options.lr_gamma == 1.0 and options.overwrite


def test_train_cli_reports_a_missing_data_path_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--data_path", str(tmp_path / "nowhere"), "--split_dir", str(tmp_path),
         "--height", "64", "--width", "96", "--no_cuda", "--log_dir", str(tmp_path / "logs")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


def _run_sh_array(name: str) -> list[str]:
    """The words of the bash array ``name=(...)`` in run.sh."""
    match = re.search(rf"^{name}=\((.*?)\)", (PROJECT_ROOT / "run.sh").read_text(), re.MULTILINE | re.DOTALL)
    assert match, name
    return match[1].split()


def test_run_sh_baseline_is_monodepth2_on_nyu():
    options = GasMonoOptions().parse(_run_sh_array("baseline_recipe"))
    assert options.depth_encoder == "resnet18" and not options.use_posegt and not options.selfpp
    assert (options.height, options.width, options.max_depth, options.model_name) == (256, 320, 10.0, "baseline")
    assert (options.learning_rate, options.disparity_smoothness, options.batch_size) == (1e-4, 1e-3, 12)
    gasmono = GasMonoOptions().parse(_run_sh_array("recipe"))
    assert gasmono.depth_encoder is None and gasmono.use_posegt and gasmono.selfpp


def test_run_sh_train_kitti_is_gasmono_at_monodepth2_kitti_settings():
    options = GasMonoOptions().parse(_run_sh_array("kitti_recipe"))
    assert (options.dataset, options.split, options.height, options.width) == ("kitti", "eigen_zhou", 192, 640)
    assert (options.batch_size, options.max_depth, options.disparity_smoothness, options.num_epochs) == (
        12, 100.0, 1e-3, 20)
    assert options.use_posegt and options.selfpp and options.learning_rate == 5e-5 and not options.use_stereo
    result = subprocess.run(["bash", str(PROJECT_ROOT / "run.sh"), "train_kitti"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and result.stderr.startswith("error: train_kitti needs DATA_PATH")


def test_run_sh_baseline_needs_a_data_path():
    result = subprocess.run(["bash", str(PROJECT_ROOT / "run.sh"), "baseline"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and result.stderr.startswith("error: baseline needs DATA_PATH")
    assert "baseline DATA_PATH [train.py flags]" in result.stderr
