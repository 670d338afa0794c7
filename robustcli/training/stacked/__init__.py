"""Many instances of one candidate trained at once, as one stacked model.

K instances of a candidate (or of candidates that share an architecture and a batch size) keep
exactly what the plain loop (:func:`robustcli.training.instance.train_instance`) gives each of
them:

* its own initial weights: the model is built K times, each under
  ``torch.manual_seed(spec.init_seed)`` followed by ``task.init_weights``, then the parameters are
  stacked into ``[K, ...]`` tensors (``torch.func.stack_module_state``);
* its own training sample (the same :func:`sample_indices` draw) and its own batch order (a
  generator seeded with ``init_seed``, one ``randperm`` per epoch, batches of ``batch_size`` then
  the remainder);
* its own optimiser state, step count and hyperparameters (:mod:`stacked_optim`, bitwise equal to
  ``torch.optim`` per instance);
* its own early stopping; a finished instance leaves the stack (the stack is compacted) and the
  others go on.

The training data stay on the device as one tensor; each step gathers a ``[B, K, ...]`` batch by
index (no DataLoader). The model runs through ``torch.func.vmap(functional_call)``, which works
for any task model free of data-dependent Python control flow (:func:`check_stackable` probes it):
vmap turns convolutions into one grouped convolution and linear layers into batched matmuls. The
loss is the sum over instances of each instance's own mean objective, so each instance receives
exactly its own gradient.

What makes the generic path fast on the CPU (``fast_layout``): image batches are gathered
channels-last with the K instances' channels side by side, which vmap's grouped convolution takes
without a copy (:class:`.data.Gather`), convolution weights are stored in that order, and the
stateless copy of the model is rewritten by exact, named, switchable passes (:mod:`.rewrites`:
``shared_input_conv``, ``crop_conv``, ``pool_before_relu``, ``stacked_pool``,
``fused_eval_conv_pool``; the task's model is never changed). At the start of every stack the
rewritten model's predictions and one step's gradients are checked against the models alone
(:func:`.probe.build`).

Freed memory is kept in the process (:mod:`robustcli.training.cpu_memory`): without it, a big
stack's activations are page-faulted in at every step.

Timing: an instance's ``seconds`` is its share of the stack's wall time (each epoch's time split
evenly among the instances trained in it), so the seconds of a stack's results add up to its
wall time.

Fidelity: the optimiser math is exact, but the forward/backward of the stacked model is not
bitwise equal to the single model's (different kernels, different summation orders), so a stacked
instance matches its plain-loop twin within floating-point noise amplified by training, not
bitwise. Within one stack, an instance's numbers do not depend on its neighbours' data, seeds or
divergence; they can depend on the stack size K, which compaction changes when neighbours stop
(``compact=False`` keeps K fixed, at the price of computing the stopped rows).

The package, by job:

* :mod:`.loop`: the training loop (:func:`train_stacked`, :func:`iter_stacked`);
* :mod:`.build`: the K models stacked into one stateless model;
* :mod:`.data`: the memory layout of batches and convolution weights;
* :mod:`.ops` and :mod:`.rewrites`: the exact fast operations and the passes that put them in;
* :mod:`.probe`: :func:`check_stackable` and the run-time check of the rewritten stack;
* :mod:`.tuning`: the speed constants, with how they were measured;
* :mod:`._torch`: every private torch API used, behind a version check.
"""

from robustcli.training.stacked.loop import iter_stacked, train_stacked
from robustcli.training.stacked.probe import activation_bytes_per_example, check_stackable

__all__ = ["activation_bytes_per_example", "check_stackable", "iter_stacked", "train_stacked"]
