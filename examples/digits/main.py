"""The demo (``make demo``): train the digits classifier from ``config.yaml``, test the best checkpoint, print the
test accuracy (expect above 0.95) and draw the curves.

    python -m examples.digits.main fit --config examples/digits/config.yaml [--trainer.max_epochs=5 ...]

``fulmen fit --config examples/digits/config.yaml`` trains from the same file with the plain CLI (no test after).
"""

from __future__ import annotations

from fulmen.cli import LightningCLI


class DigitsCLI(LightningCLI):
    """The CLI, plus what the demo does after training: test the best checkpoint and plot the logged curves."""

    def after_fit(self) -> None:
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")
        if not self.trainer.is_global_zero:
            return
        print(f"test accuracy: {results[0]['test_acc']:.4f} "
              f"(best checkpoint: {self.trainer.checkpoint_callback.best_model_path})")
        try:
            from fulmen.plot import plot

            print(f"curves: {plot([self.trainer.log_dir])}")
        except ImportError:  # matplotlib is an optional extra
            pass


def main() -> None:
    # The classes come from the config's class_path entries, so any model and data module can be swapped in.
    DigitsCLI()


if __name__ == "__main__":
    main()
