// core as a Gradle java-library for the Android app (android_demo/app/settings.gradle.kts includes it).
// tests/test_android_core.py compiles the same sources with javac and runs src/test there: those tests read
// golden vectors written by the Python pipeline, so Gradle does not build or run them.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_11
    targetCompatibility = JavaVersion.VERSION_11
}

sourceSets {
    test {
        java.setSrcDirs(emptyList<String>())
    }
}

dependencies {
    compileOnly(libs.android.json)  // the phone provides org.json
}
