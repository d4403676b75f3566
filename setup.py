"""Package definition for vai_optimizer_tf."""

import setuptools

setuptools.setup(
    name="vai_optimizer_tf",
    version="0.1.0",
    description=(
        "Channel pruning for Keras / TensorFlow 2: sensitivity analysis, "
        "sparse fine-tuning and physically slim models."
    ),
    packages=setuptools.find_packages(include=["vai_optimizer_tf", "vai_optimizer_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "tf_keras==2.21.0",
        "tensorflow-model-optimization==0.8.1",
        "numpy>=1.26",
        "absl-py>=1.4",
        "tensorboard==2.21.0",
    ],
    extras_require={"test": ["pytest>=8", "hypothesis>=6.100"], "demo": ["mlxtend>=0.23"]},
    entry_points={"console_scripts": ["vai_p_tf2=vai_optimizer_tf.cli.main:run"]},
)
