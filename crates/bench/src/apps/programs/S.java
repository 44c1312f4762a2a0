// A JVM line server: a thread per connection; each line is answered with the server's
// count. The JVM runs with its defaults (G1, the JIT, class data sharing).
import java.io.*;
import java.net.*;
import java.util.concurrent.atomic.AtomicLong;

public class S {
    static final AtomicLong count = new AtomicLong();

    public static void main(String[] args) throws Exception {
        ServerSocket ss = new ServerSocket(7000);
        while (true) {
            Socket c = ss.accept();
            new Thread(() -> serve(c)).start();
        }
    }

    static void serve(Socket c) {
        try (c;
             BufferedReader r = new BufferedReader(new InputStreamReader(c.getInputStream()));
             PrintWriter w = new PrintWriter(c.getOutputStream(), true)) {
            c.setTcpNoDelay(true);
            while (r.readLine() != null) {
                w.println(count.incrementAndGet());
            }
        } catch (IOException e) {
        }
    }
}
