"""Word count over the text files of a directory, with PySpark.

Usage: wordcount.py <input dir> <output file>

The driver reads the files (the directory is on the driver's persistent
volume, mounted in its sandbox only), the executors count the words, and the
driver writes "word<TAB>count" lines, sorted by word, to the output file
(on the same volume), replacing it atomically.
"""

import os
import sys

from pyspark import SparkConf, SparkContext


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: wordcount.py <input dir> <output file>")
    source, target = sys.argv[1], sys.argv[2]
    lines = []
    for name in sorted(os.listdir(source)):
        path = os.path.join(source, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                lines.extend(f.read().splitlines())
    sc = SparkContext(conf=SparkConf().setAppName("wordcount"))
    counts = (
        sc.parallelize(lines, 2)
        .flatMap(lambda line: line.lower().split())
        .map(lambda word: (word, 1))
        .reduceByKey(lambda a, b: a + b)
        .collect()
    )
    sc.stop()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    partial = target + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        for word, n in sorted(counts):
            f.write(f"{word}\t{n}\n")
    os.replace(partial, target)
    print(f"counted {len(counts)} distinct words in {len(lines)} lines into {target}")


if __name__ == "__main__":
    main()
