"""scikit-learn drop-in replacements for ``MLPClassifier`` and ``MLPRegressor``.

Change one import and keep every parameter::

    # from sklearn.neural_network import MLPClassifier
    from fastnn.sklearn import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=50).fit(X, y)

The estimators take scikit-learn's parameters with the same meaning and
defaults, expose the same fitted attributes (``coefs_``, ``intercepts_``,
``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
``best_validation_score_``, ``n_iter_``, ``n_layers_``, ``n_outputs_``,
``classes_``, ``out_activation_``, ``t_``, ``n_features_in_``,
``feature_names_in_``) and follow the same training algorithm (initialization,
mini-batches and their shuffling, the per-batch loss with its L2 term
``alpha / (2 * sum(sample_weight of the batch)) * ||W||^2``, the tol /
n_iter_no_change convergence rule, ``'adaptive'`` learning rate divided by 5,
early stopping on a held-out validation split with the best weights restored).
With float64 X (or ``dtype="float64"``) and the same ``random_state`` a fit reproduces
scikit-learn's run up to float rounding.  The work is done by fastnn's fused C
kernels on one flat parameter buffer, several times faster than scikit-learn.

Or leave the imports alone and patch scikit-learn, as scikit-learn-intelex's
``patch_sklearn()`` does::

    import fastnn.sklearn
    fastnn.sklearn.patch()        # sklearn.neural_network.MLP* are now fastnn's
    from sklearn.neural_network import MLPClassifier
    ...
    fastnn.sklearn.unpatch()      # scikit-learn's own again

Extras (fastnn only): ``dropout`` (inverted dropout after every hidden layer,
stochastic solvers only), ``n_threads`` (threads for this estimator's fit and
predict; default: fastnn's global setting), ``dtype`` (None, the default:
scikit-learn's rule below; ``"float32"`` or ``"float64"`` to choose) and
``matmul_precision`` (None: fastnn's setting; ``"bf16"`` rounds the float32
GEMM operands to bfloat16, see :func:`fastnn.set_matmul_precision`).

Differences from scikit-learn, all deliberate:

* The dtype follows scikit-learn's rule by default: float32 X trains (and the
  model predicts) in float32, any other X in float64; ``coefs_``,
  ``intercepts_``, probabilities and regression outputs are in the model's
  dtype.  ``dtype="float32"`` (fastnn only) trains in float32 whatever X is --
  the fastest setting; passing float32 X does the same.
* Early stopping's validation split is stratified for every single-label
  classification target (scikit-learn's documentation promises a stratified
  split but its code only stratifies binary targets).
* ``solver='sgd'`` runs torch-style SGD (fastnn's fused kernel) whose momentum
  buffer holds raw gradients where scikit-learn's velocity holds
  learning-rate-scaled steps.  With a constant learning rate the two are the
  same algorithm; when the learning rate changes ('invscaling', 'adaptive')
  the buffer is rescaled by ``lr_old / lr_new`` so the updates stay identical.
* ``solver='adam'`` uses fastnn's Adam with ``eps_hat=True`` (epsilon added before
  the bias correction), which makes the update exactly scikit-learn's
  ``-lr_t * m / (sqrt(v) + epsilon)``.
* A mini-batch whose sample weights sum to zero is skipped (scikit-learn
  would divide by zero).
* The multiclass log-loss is computed from the logits (log-sum-exp) instead of
  clipped probabilities, so ``loss_`` can differ when a probability underflows
  ``2.2e-16``.

The package: :mod:`._patch` (patch / unpatch), :mod:`._solvers` (scikit-learn's loss
as a fastnn loss, the stochastic solvers on :class:`fastnn.training.Trainer`, L-BFGS
through scipy), :mod:`._base` (parameter checks, the fastnn model, prediction,
pickling) and :mod:`._estimators` (the two classes).

Pickling stores the weights and optimizer state as NumPy arrays and rebuilds
the fastnn model on load; no C object is pickled.

scikit-learn is imported by this module only: ``import fastnn`` never imports it.
"""

from ._estimators import MLPClassifier, MLPRegressor
from ._patch import is_patched, patch, unpatch

__all__ = ["MLPClassifier", "MLPRegressor", "is_patched", "patch", "unpatch"]
