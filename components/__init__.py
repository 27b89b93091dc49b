"""KFP components of the CT pipeline: one module per step, each a typed interface over the library.

They are Lightweight Python components on the project image with ``install_kfp_package=False`` and
no ``packages_to_install``: nothing is pip-installed at run time, and the same definitions run
under ``kfp.local.SubprocessRunner`` in the current environment. Bodies import inside the function
because KFP ships only the function's source to the pod.
"""
