/*
 * Stand-in for XStream's NoTypePermission, for Debian's JMeter 2.13 only.
 *
 * Debian's libxstream-java 1.4.20 turns on XStream's type allow-list by
 * default; JMeter 2.13 predates it and never allows its own classes, so it
 * fails to load any plan (ForbiddenClassException: ScriptWrapper). XStream has
 * no global switch. NONE is the permission checked last, after XStream's
 * defaults; this copy allows JMeter's own element types there and forbids
 * everything else, exactly as the original does.
 *
 * jmeter/run.sh compiles it and puts it ahead of xstream.jar on the
 * classpath of the JMeter processes it starts (JAVA_CLASSPATH, which
 * /usr/bin/jmeter prepends), and nowhere else.
 */
package com.thoughtworks.xstream.security;

public class NoTypePermission implements TypePermission {

    public static final TypePermission NONE = new NoTypePermission();

    public boolean allows(Class type) {
        String name = type == null ? "" : type.getName();
        if (name.startsWith("org.apache.jmeter.") || name.startsWith("org.apache.jorphan.")) {
            return true;
        }
        throw new ForbiddenClassException(type);
    }

    public int hashCode() {
        return 1;
    }

    public boolean equals(Object obj) {
        return obj != null && obj.getClass() == NoTypePermission.class;
    }
}
