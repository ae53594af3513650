package corral;

import java.util.ArrayList;
import java.util.List;

import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;

/**
 * Estimates Pi by sampling points in the unit square on the executors.
 *
 * Arguments: [slices] [seconds to keep running after the estimate], or
 * "fail" to exit with status 3 once the context is up (for supervision
 * tests).
 */
public final class CorralPi {
    public static void main(String[] args) throws Exception {
        String first = args.length > 0 ? args[0] : "2";
        JavaSparkContext sc = new JavaSparkContext(new SparkConf().setAppName("CorralPi"));
        if (first.equals("fail")) {
            System.out.println("CorralPi failing on purpose");
            sc.stop();
            System.exit(3);
        }
        int slices = Integer.parseInt(first);
        int perSlice = 20000;
        List<Integer> seeds = new ArrayList<>();
        for (int i = 0; i < slices; i++) {
            seeds.add(i);
        }
        long inside = sc.parallelize(seeds, slices).map(seed -> {
            java.util.Random r = new java.util.Random(seed * 7919L + 1);
            long in = 0;
            for (int i = 0; i < perSlice; i++) {
                double x = r.nextDouble() * 2 - 1;
                double y = r.nextDouble() * 2 - 1;
                if (x * x + y * y <= 1) {
                    in++;
                }
            }
            return in;
        }).reduce(Long::sum);
        double pi = 4.0 * inside / ((long) slices * perSlice);
        System.out.println("Pi is roughly " + pi);
        System.out.flush();
        long linger = args.length > 1 ? Long.parseLong(args[1]) : 0;
        if (linger > 0) {
            Thread.sleep(linger * 1000);
        }
        sc.stop();
    }
}
