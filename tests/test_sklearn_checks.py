"""scikit-learn's own estimator checks, on both estimators.

The estimators' tags say what they take: images (arrays (n, h, w[, c]),
paths, PIL images), not 2-d numeric tables.  scikit-learn runs no check at
all for an estimator without ``two_d_array`` in its tags, so the suite runs
on a subclass that claims it and changes nothing else.  Every check must
then pass, except those listed below: each feeds a 2-d numeric table (or
expects a table's error message), which an image model cannot take.  Where
such a check's intent applies to images, ``tests/test_sklearn_intents.py``
tests the image version of it (named in the reason).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktransfer import PretrainedFeatures, TransferClassifier, TransferRegressor

TABLE = "fits on a 2-d numeric table (n_samples, n_features); images are (n, h, w[, c])"

# check name -> why it cannot apply (and where its image version is tested)
COMMON = {
    "check_fit_score_takes_y": f"{TABLE}; image version: test_fit_and_score_take_y",
    "check_estimators_overwrite_params": f"{TABLE}; image version: test_fit_leaves_params",
    "check_dont_overwrite_parameters": f"{TABLE}; image version: test_fit_leaves_params",
    "check_estimators_fit_returns_self": f"{TABLE}; image version: test_fit_returns_self",
    "check_readonly_memmap_input": f"{TABLE}; image version: test_read_only_input",
    "check_n_features_in_after_fitting": "n_features_in_ counts table columns; images have none",
    "check_n_features_in": "n_features_in_ counts table columns; images have none",
    "check_positive_only_tag_during_fit": f"{TABLE} with negative values",
    "check_estimators_dtypes": f"{TABLE} of several dtypes",
    "check_dtype_object": "fits on a 2-d table of objects (10 columns), not an image column",
    "check_estimators_empty_data_messages": "expects the table error '0 feature(s)'; "
                                            "image version: test_empty_input_is_refused",
    "check_pipeline_consistency": f"{TABLE}; image version: test_pipeline_consistency",
    "check_estimators_nan_inf": f"{TABLE}; image version: test_nan_pixels_are_refused",
    "check_estimators_pickle": f"{TABLE}; image version: test_pickle_round_trip",
    "check_f_contiguous_array_estimator": f"{TABLE} in Fortran order",
    "check_methods_sample_order_invariance": f"{TABLE}; image version: "
                                             "test_sample_order_and_subset_invariance",
    "check_methods_subset_invariance": f"{TABLE}; image version: "
                                       "test_sample_order_and_subset_invariance",
    "check_fit2d_1sample": "expects the table error '1 sample'",
    "check_fit2d_1feature": "expects the table error '1 feature(s)'",
    "check_fit2d_predict1d": f"{TABLE}, then predicts on a 1-d row",
    "check_dict_unchanged": f"{TABLE}; image version: test_predict_leaves_the_model",
    "check_fit_idempotent": f"{TABLE}; image version: test_fit_idempotent",
    "check_fit_check_is_fitted": f"{TABLE}; image version: test_fit_check_is_fitted",
}
EXPECTED = {
    "TransferClassifier": {
        **COMMON,
        "check_classifier_data_not_an_array": f"{TABLE}, wrapped",
        "check_classifiers_classes": f"{TABLE}; image version: test_string_labels",
        "check_classifiers_train": f"{TABLE}",
        "check_supervised_y_2d": f"{TABLE}; image version: test_column_y_warns",
        "check_class_weight_classifiers": f"{TABLE}",
        "check_classifiers_multilabel_representation_invariance":
            f"{TABLE}; image version: test_multilabel_representations",
        "check_classifiers_multilabel_output_format_predict":
            f"{TABLE}; image version: test_multilabel_output_format",
        "check_classifiers_multilabel_output_format_predict_proba":
            f"{TABLE}; image version: test_multilabel_output_format",
        "check_classifiers_multilabel_output_format_decision_function":
            f"{TABLE} (and there is no decision_function)",
    },
    "TransferRegressor": {
        **COMMON,
        "check_regressor_data_not_an_array": f"{TABLE}, wrapped",
        "check_regressors_train": f"{TABLE}",
        "check_regressors_no_decision_function": f"{TABLE}",
        "check_regressor_multioutput": f"{TABLE}; image version: test_several_outputs",
        "check_regressors_int": f"{TABLE}; image version: test_integer_targets",
        "check_supervised_y_2d": f"{TABLE}; image version: test_several_outputs",
        "check_complex_data": "expects the table error 'Complex data not supported'",
    },
    "PretrainedFeatures": {
        **COMMON,
        "check_transformer_data_not_an_array": f"{TABLE}, wrapped",
        "check_transformer_general": f"{TABLE}",
        "check_complex_data": "expects the table error 'Complex data not supported'",
    },
}


def _claims_tables(cls):
    class Checked(cls):
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.two_d_array = True  # only to let scikit-learn run its checks
            return tags

    Checked.__name__ = Checked.__qualname__ = cls.__name__
    return Checked


FAST = dict(backbone="resnet18", weights=None, image_size=32)


@parametrize_with_checks(
    [_claims_tables(TransferClassifier)(**FAST, epochs=1, random_state=0),
     _claims_tables(TransferRegressor)(**FAST, epochs=1, random_state=0),
     _claims_tables(PretrainedFeatures)(**FAST)],
    expected_failed_checks=lambda est: EXPECTED[type(est).__name__],
    xfail_strict=True,  # a listed check that starts passing must come off the list
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_the_real_tags_say_images():
    from sklearn.utils import get_tags

    for est in (TransferClassifier(), TransferRegressor(), PretrainedFeatures()):
        tags = get_tags(est)
        assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array
        assert tags.input_tags.string  # file paths
    assert get_tags(TransferClassifier()).target_tags.required
    assert get_tags(TransferClassifier()).non_deterministic  # no random_state
    assert not get_tags(TransferClassifier(random_state=0)).non_deterministic
    assert get_tags(TransferClassifier()).classifier_tags.multi_label
    assert get_tags(TransferRegressor()).target_tags.multi_output
    assert get_tags(TransferRegressor()).estimator_type == "regressor"
