"""MOVi-E from its TFDS TFRecord shards, without TensorFlow (``diod data movi``).

``tfrecord`` reads the container (checksums verified), ``example`` decodes tf.Example
protobufs, ``schema`` turns MOVi-E's features into arrays, ``convert`` writes the
``movi`` dataset layout that ``stages.datasets.movi`` reads.
"""

from stages.movi.convert import MoviConfig, convert_movi

__all__ = ["MoviConfig", "convert_movi"]
