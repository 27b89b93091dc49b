"""How drift is judged unless a setting says otherwise, defined once for the library, the monitor, the drift
component and ``driftloop drift`` (a module without imports, so building the CLI's parser stays cheap)."""

NUM_METHOD = "wasserstein"  # Evidently's normed Wasserstein distance for numeric features
CAT_METHOD = "jensenshannon"  # Jensen-Shannon distance for categorical and boolean features
# The dataset drifts when at least this share of its features drifted: what the closed loop is tuned to (a
# real covariate shift moves about a third of the churn features; the noise between clean windows, one in ten).
DRIFT_SHARE = 0.3
