"""`robust reproduce RUN_ID`: retrain one logged instance and compare bit for bit."""

from __future__ import annotations

from typing import Annotated

import typer

from robustcli.cli._common import DeviceOption, JsonOption, TrackingUriOption, console, handle_errors, print_json


@handle_errors
def reproduce(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id of an instance (a child run).")],
    tracking_uri: TrackingUriOption = None,
    device: DeviceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Retrain one logged instance from what its MLflow run holds (task, candidate, seeds,
    settings) and say whether the test loss matches bit for bit; if not, which recorded version or
    setting differs. It trains with the logged number of torch threads. Exit code 0 on a match, 1
otherwise. Nothing of this instance is written to the store (opening a local store does write
the runs a crashed process left in its journal).

    Example: robust reproduce 3f2a9c0d4e5b4a7f8e1d2c3b4a5f6e7d
    """
    from robustcli.api.reproduce import reproduce_run

    result = reproduce_run(run_id, tracking_uri=tracking_uri, device=device)
    report, same = result.as_dict(), result.bitwise_equal
    if json_output:
        print_json(report)
    else:
        verdict = "[green]bit-for-bit identical[/green]" if same else "[red]differs[/red]"
        console.print(
            f"run {run_id} ({result.task}, {result.candidate_description} ({result.candidate}), instance "
            f"{result.instance_index}): logged "
            f"{report['logged_test_loss']!r}, reproduced {report['reproduced_test_loss']!r}: {verdict}"
        )
        for key, diff in result.differences.items():
            console.print(f"  {key}: logged {diff['logged']!r}, now {diff['now']!r}")
        if not same and not result.differences:
            console.print("  no recorded version or setting differs: the difference comes from the hardware or the library's kernels")
    if not same:
        raise typer.Exit(1)
